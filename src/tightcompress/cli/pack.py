"""`tightcompress pack` and `tightcompress unpack`."""

from __future__ import annotations

import argparse
import sys
import typing
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tightcompress.api import METHODS, PackConfig
from tightcompress.cli.common import (
    JOBS,
    MAX_ITERATIONS,
    add_quiet,
    add_skip_bad_layers,
    compile_kernels_once,
    declare_paths,
    find_layer,
    float_in,
    height_arg,
    int_in,
)
from tightcompress.errors import TightCompressError
from tightcompress.format.dtypes import store_dtype
from tightcompress.format.io import load_packed, load_packed_state, save_packed
from tightcompress.format.packed import PackedMatrix
from tightcompress.parallel import check_pack_memory, default_jobs, pack_layers, worker_count
from tightcompress.pipeline.oneshot import ALLOCATIONS
from tightcompress.prune.subword_pack import is_subword, weight_matrix
from tightcompress.readers import INPUT_HELP, ModelWeights, model_weights, read_model
from tightcompress.readers.matrices import DEPTHWISE_REASON, weight_source
from tightcompress.report import build_report, unimproved_search_note
from tightcompress.results import PackReport
from tightcompress.utils.atomic import atomic_path, output_group, write_json_atomic
from tightcompress.zoo import ZOO, ZooLayer, zoo_matrices

# column combining's merge rules, as `PackConfig.merge` declares them (no numba import at start-up)
MERGES = typing.get_args(typing.get_type_hints(PackConfig)["merge"])
# `pipeline.oneshot.UNSTRUCTURED_METHODS`, named here so that --help does not import the pipeline
UNSTRUCTURED_METHODS = ("unstructured", "unstructured-uniform")
SUBWORD_METHOD = "tight-subword"  # one-shot only here (`pipeline.oneshot`; its fixed config is a tight one)
# the packing options a planned rate replaces: (argparse dest, option, its default)
FIXED_OPTIONS = (
    ("group", "--group", 8),
    ("height", "--height", "auto"),
    ("alpha", "--alpha", 8),
    ("gamma", "--gamma", 0.5),
    ("iterations", "--iterations", None),
    ("objective", "--objective", "magnitude"),
    ("merge", "--merge", "authors"),
    ("section", "--section", None),
    ("sparsity", "--sparsity", None),
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pack", help="pack a matrix or every conv/linear weight of a checkpoint")
    parser.add_argument("input", nargs="?", help=f"{INPUT_HELP} (or use --zoo)")
    add_key_option(parser)
    parser.add_argument(
        "--zoo",
        metavar="NAME",
        help=f"pack every layer of a zoo model instead of a file: {', '.join(ZOO)}",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="STATE.pt",
        help="with --zoo: weights from this state_dict of the same architecture (default: seeded init)",
    )
    parser.add_argument(
        "--zoo-layers", choices=("all", "conv"), default="all", help="with --zoo: all layers, or conv only"
    )
    add_pack_options(parser, one_shot_methods=(SUBWORD_METHOD, *UNSTRUCTURED_METHODS))
    add_parallel_options(parser)
    parser.add_argument("--json", required=True, metavar="REPORT.json", help="write the report here")
    parser.add_argument("--out", metavar="PACKED.safetensors", help="also write the packed layers here")
    parser.add_argument(
        "--calibration",
        metavar="CALIB.npz",
        help="calibrated one-shot pruning. ONNX input: an .npz of the model's inputs keyed by input name "
        "(first axis: samples); checkpoint with --model: a .pt or .npy tensor of inputs, samples first. What "
        "is kept is chosen by |w| x ||x|| and the kept weights are solved again, layer by layer, to "
        "reproduce the dense model's layer outputs (the report adds output errors)",
    )
    parser.add_argument(
        "--rate",
        type=float_in(1.0, 1e6),
        metavar="R",
        help="one-shot pruning of a model file to this whole-model compression rate: per-layer options "
        "(or, for unstructured, per-layer kept counts) chosen for the least dropped |w| x ||x|| (|w| "
        "without --calibration), every layer alike; replaces --group/--height/--alpha/--gamma",
    )
    parser.add_argument(
        "--allocation",
        choices=ALLOCATIONS,
        help="with --rate: sensitivity (the default with --calibration; planned without) for the least "
        "estimated output error, each layer's share measured on the calibration samples with that layer "
        "alone pruned; planned (the default without --calibration) for the least summed dropped saliency, "
        "every layer alike; uniform gives every layer the rate itself (Wanda's and SparseGPT's rule)",
    )
    parser.add_argument(
        "--pruned",
        metavar="OUT.onnx|OUT.pt",
        help="with --rate or --calibration: also write the pruned model, ready to run and score: the input "
        "ONNX with each layer's kept weights (OUT.onnx), or the checkpoint's state_dict (OUT.pt, "
        "OUT.safetensors). The only output of the unstructured methods besides --json",
    )
    add_skip_bad_layers(parser)
    add_quiet(parser)
    parser.set_defaults(func=run_pack)
    declare_paths(parser, inputs=("input", "checkpoint", "calibration"), outputs=("json", "out", "pruned"))

    unpack = subparsers.add_parser(
        "unpack", help="rebuild the K x N matrices, or a PyTorch state_dict, from a packed file"
    )
    unpack.add_argument("packed", help="PACKED.safetensors from `pack --out` or `save_model`")
    unpack.add_argument(
        "output",
        help="OUT.npy (one layer) or OUT.npz (every layer) as K x N matrices; OUT.pt or OUT.safetensors: "
        "a PyTorch-layout state_dict (conv weights 4-D, biases and the other tensors of the checkpoint)",
    )
    unpack.add_argument("--layer", help="which layer to write to a .npy when the file holds several")
    unpack.add_argument(
        "--onnx",
        metavar="IN.onnx",
        help="with OUT.onnx: the ONNX file that was packed; OUT is IN with every packed layer's weight "
        "replaced by its kept values (same graph, names and dtypes)",
    )
    add_quiet(unpack)
    unpack.set_defaults(func=run_unpack)
    declare_paths(unpack, inputs=("packed", "onnx"), outputs=("output",))


def add_key_option(parser: argparse.ArgumentParser, *, model: bool = True) -> None:
    """`--key PATH` (which nested state_dict of a checkpoint) and, unless `model=False` (a command that
    defines its own), `--model` (read conv groups from it)."""
    parser.add_argument(
        "--key",
        metavar="PATH",
        help="the state_dict inside a checkpoint holding several, e.g. model or ema/model",
    )
    if not model:
        return
    parser.add_argument(
        "--model",
        metavar="module:Class",
        help="the checkpoint's model class (or file.py:Class): conv groups are read from it, since a "
        "state_dict does not record them (grouped convs are then packed per group)",
    )


def read_input(args: argparse.Namespace) -> ModelWeights:
    """The input file as `ModelWeights`; with `--model`, loaded into that class and read from its layers."""
    if getattr(args, "model", None) is None:
        return read_model(args.input, key=args.key)
    if Path(args.input).suffix.lower() not in (".pt", ".pth", ".safetensors"):
        raise TightCompressError("--model goes with a .pt/.pth/.safetensors checkpoint")
    from tightcompress.pipeline.models import load_model
    from tightcompress.readers.checkpoint import read_state_dict

    model = load_model(args.model, args.input, key=args.key)
    found = model_weights(model, source=str(args.input))
    return with_checkpoint_dtypes(found, read_state_dict(args.input, key=args.key))


def with_checkpoint_dtypes(found: ModelWeights, saved: dict) -> ModelWeights:
    """`found` (read from the model class, which cast every tensor to its own dtype) with each tensor's
    dtype as saved (fp16, bf16, int8, or a mix), so the packed values and the state_dict `unpack` writes
    are the checkpoint's, exactly, as they are without --model."""
    from dataclasses import replace

    from tightcompress.readers.checkpoint import tensor_to_numpy

    matrices = {}
    for name, gemm in found.matrices.items():
        tensor = saved.get(gemm.layer.name)
        dtype = tensor_to_numpy(tensor)[1] if tensor is not None else gemm.dtype
        matrices[name] = replace(gemm, layer=replace(gemm.layer, dtype=dtype))
    state = found.state
    if state is not None:
        state = {k: saved[k] if k in saved and saved[k].shape == v.shape else v for k, v in state.items()}
    return replace(found, matrices=matrices, state=state)


def add_pack_options(parser: argparse.ArgumentParser, *, one_shot_methods: tuple[str, ...] = ()) -> None:
    """The packing options shared by `pack` and the commands built on it (`one_shot_methods`: the methods
    with no packed format that `pack --rate` also takes)."""
    help_text = "packing method"
    if one_shot_methods:
        help_text += (
            f"; one-shot (--rate, --calibration) also {', '.join(one_shot_methods)} (unstructured: the "
            "reference, per-layer kept counts planned for the whole-model rate; unstructured-uniform: the "
            "same fraction in every layer; neither has a packed format: write --pruned)"
        )
    parser.add_argument("--method", choices=(*METHODS, *one_shot_methods), default="tight", help=help_text)
    parser.add_argument("--group", type=int, default=8, metavar="G", help="lane width G (G:1 mux per PE)")
    parser.add_argument(
        "--height",
        type=height_arg,
        default="auto",
        metavar="K|auto",
        help="slots per group per column, or auto for lossless (tight: each group as tall as its densest "
        "column; nm: the least N that drops nothing)",
    )
    parser.add_argument("--tile", type=int, default=32, metavar="C", help="array columns per tile")
    parser.add_argument("--alpha", type=int, default=8, help="column combining: rows per group at most")
    parser.add_argument(
        "--gamma",
        type=float,
        default=0.5,
        help="column combining: conflicts allowed per output column per group",
    )
    add_cc_variant_options(parser)
    parser.add_argument(
        "--sparsity",
        type=float,
        metavar="S",
        help="first zero the smallest-magnitude fraction S of each matrix (default: none, as given)",
    )
    parser.add_argument(
        "--permute",
        action="store_true",
        help="nm: first search one input-channel (row) permutation per layer, shared by all tiles",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the permutation search")
    parser.add_argument(
        "--iterations", type=int_in(0, MAX_ITERATIONS), help="annealing moves (default: scaled to the matrix)"
    )
    parser.add_argument(
        "--objective",
        choices=("magnitude", "squared"),
        default="magnitude",
        help="capped height: minimise dropped |w| or dropped w^2",
    )


def add_cc_variant_options(parser: argparse.ArgumentParser) -> None:
    """`--merge` and `--section`: which column-combining variant (shared by `pack` and `sweep`)."""
    parser.add_argument(
        "--merge",
        choices=MERGES,
        default="authors",
        help="column combining: the authors' first-group densest-union merge, or least overlap anywhere",
    )
    parser.add_argument(
        "--section",
        type=int,
        metavar="ROWS",
        help="column combining: combine each section of this many reduction-axis rows separately",
    )


def add_parallel_options(parser: argparse.ArgumentParser) -> None:
    """`--jobs` and `--ray`: where the independent layers are packed."""
    parser.add_argument(
        "--jobs",
        type=JOBS,
        default=None,
        metavar="N",
        help=f"worker processes packing layers in parallel (default: the cores, here {default_jobs()})",
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="pack the layers on this Ray cluster (optional extra; fails if unreachable, no fallback)",
    )


def matrices_from_args(
    args: argparse.Namespace,
) -> tuple[dict[str, np.ndarray], dict, dict[str, ZooLayer], ModelWeights | None]:
    """`(matrices, notes, zoo layers by name, what the reader found)` from the input file or `--zoo`."""
    if (args.input is None) == (args.zoo is None):
        raise TightCompressError("give either an input file or --zoo NAME (exactly one)")
    if args.zoo is None:
        if args.checkpoint is not None:
            raise TightCompressError("--checkpoint goes with --zoo; pass a checkpoint file as the input")
        found = read_input(args)
        notes = dict(found.notes)
        if found.skipped or len(found.layers) > 1:
            notes["skipped_layers"] = found.skipped
        return found.arrays, notes, {}, found
    if args.key is not None or args.model is not None:
        raise TightCompressError("--key and --model go with an input checkpoint, not with --zoo")
    matrices, layers, skipped = zoo_matrices(
        args.zoo, seed=args.seed, kinds=args.zoo_layers, checkpoint=args.checkpoint
    )
    notes = {
        "zoo": args.zoo,
        "weights": args.checkpoint or f"seeded Kaiming-normal init (seed {args.seed})",
        "skipped_layers": [
            {"name": layer.name, "kind": layer.kind, "shape": list(layer.shape), "reason": _SKIP_REASON}
            for layer in skipped
        ],
    }
    return matrices, notes, {layer.name: layer for layer in layers}, None


def split_bad_layers(
    matrices: dict[str, np.ndarray], skip: bool, *, squared: bool = False
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """`(good matrices, skipped)`: with `skip`, layers that cannot be packed (all zero, NaN or inf, or so
    large that their total |w| (w^2 with `squared`) overflows) are set aside as `{"name", "reason"}`;
    without it the first such layer is the command's one-line error, before any work."""
    from tightcompress.api import check_matrix, check_sums_finite

    good, skipped = {}, []
    for name, matrix in matrices.items():
        try:
            check_sums_finite(check_matrix(matrix, name), name, squared=squared)
        except TightCompressError as exc:
            if not skip:
                hint = " (--skip-bad-layers packs the other layers)" if len(matrices) > 1 else ""
                raise TightCompressError(f"{exc}{hint}") from None
            skipped.append({"name": name, "reason": str(exc).removeprefix(f"{name}: ")})
            continue
        good[name] = matrix
    if not good:
        raise TightCompressError(f"no layer can be packed: {skipped[0]['name']}: {skipped[0]['reason']}")
    return good, skipped


_SKIP_REASON = DEPTHWISE_REASON


def config_from_args(args: argparse.Namespace, method: str | None = None) -> PackConfig:
    return PackConfig(
        method=method or args.method,
        group=args.group,
        height=args.height,
        tile=args.tile,
        alpha=args.alpha,
        gamma=args.gamma,
        sparsity=args.sparsity,
        seed=args.seed,
        iterations=args.iterations,
        objective=args.objective,
        merge=args.merge,
        section=args.section,
        permute=getattr(args, "permute", False),
    )


def run_pack(args: argparse.Namespace) -> int:
    one_shot = args.rate is not None or args.calibration is not None or args.allocation is not None
    if one_shot or args.method in UNSTRUCTURED_METHODS:
        return run_pack_one_shot(args)
    if args.method == SUBWORD_METHOD:
        raise TightCompressError(
            "--method tight-subword is one-shot here: give --rate R (or --calibration with --group and "
            "--height); compress --granularity subword fine-tunes it"
        )
    if args.pruned is not None:
        raise TightCompressError("--pruned goes with one-shot pruning: give --rate R (or --calibration)")
    config = config_from_args(args)
    matrices, notes, zoo, found = matrices_from_args(args)
    matrices, bad_layers = split_bad_layers(
        matrices, skip=args.skip_bad_layers, squared=config.objective == "squared"
    )
    if args.ray is None:  # before the kernels compile and the progress bar starts
        check_pack_memory([m.shape for m in matrices.values()], worker_count(args.jobs, len(matrices)))
    compile_kernels_once(args)
    with tqdm(
        total=len(matrices),
        desc="pack",
        unit="layer",
        disable=args.quiet or len(matrices) < 2,
        file=sys.stderr,
    ) as bar:
        packed_layers = pack_layers(
            matrices, config, jobs=args.jobs, ray_address=args.ray, progress=lambda _name: bar.update()
        )
    if found is not None:
        restore_dtypes(packed_layers, found)
    layers = [packed.report() for packed in packed_layers.values()]
    for layer in layers:
        if layer["name"] in zoo:
            layer["kind"] = zoo[layer["name"]].kind
            layer["out_pixels"] = zoo[layer["name"]].out_pixels
    report = build_report(layers, config=vars(config))
    if notes:
        report["notes"] = notes
    if bad_layers:  # beside the layers the readers skip (depthwise), one list of what was not packed
        notes = report.setdefault("notes", {})
        notes["skipped_layers"] = [*notes.get("skipped_layers", []), *bad_layers]
    unimproved = unimproved_search_note(layers)
    if unimproved:
        report.setdefault("notes", {})["messages"] = [unimproved]
    with output_group() as stage:  # --out and --json are written both or neither
        if args.out:
            state, state_dtypes = passthrough_state(found, packed_layers)
            save_packed(stage(args.out), packed_layers, state=state, state_dtypes=state_dtypes)
        write_json_atomic(stage(args.json), PackReport.dump(report))
    total = report["total"]
    label = f"{config.method} (permuted)" if config.permute else config.method
    print(
        f"{len(layers)} layer(s), {label}: rate {total['compression_rate']:.2f}x, "
        f"utilization {total['utilization']:.1%}, dropped {total['dropped_nnz']} nnz "
        f"({total['dropped_magnitude_fraction']:.2%} of |w|) -> {args.json}"
    )
    if unimproved:
        print(f"note: {unimproved}")
    return 0


def run_pack_one_shot(args: argparse.Namespace) -> int:
    """`pack IN --rate R [--calibration CALIB.npz]`: one-shot pruning of a model file to a whole-model rate
    (`pipeline.oneshot`), and `pack IN.onnx --calibration CALIB.npz` with one fixed packing config."""
    from tightcompress.pipeline.oneshot import OneShotOptions, one_shot, one_shot_onnx

    method = check_one_shot_args(args)
    onnx_input = Path(args.input).suffix.lower() == ".onnx"
    config = None
    if args.rate is None:  # one fixed config (tight-subword's: a tight one counting subword rows)
        config = config_from_args(args, method="tight" if method == SUBWORD_METHOD else None)
    options = OneShotOptions(method=method, rate=args.rate, seed=args.seed, allocation=args.allocation)
    compile_kernels_once(args)
    found = graph = None
    if onnx_input:
        from tightcompress.pipeline.calibration import read_calibration_npz
        from tightcompress.readers.onnx import read_onnx

        calibration = None if args.calibration is None else read_calibration_npz(args.calibration)
        graph = read_onnx(args.input)
        result = one_shot_onnx(graph, options, calibration=calibration, config=config, quiet=args.quiet)
    elif args.model is not None:
        found, result = one_shot_checkpoint_model(args, method, config)
    else:
        found = read_input(args)
        layers = list({gemm.layer.name: gemm.layer for gemm in found.matrices.values()}.values())
        result = one_shot(layers, None, options, config=config, source=found.source, quiet=args.quiet)
        result.report["notes"] = {**found.notes, **result.report["notes"]}
        result.report["notes"]["skipped_layers"] = [*found.skipped, *result.report["notes"]["skipped_layers"]]
    report = result.report
    with output_group() as stage:  # every output is written, or none
        if args.out:
            state, state_dtypes = passthrough_state(found, result.packed)
            save_packed(stage(args.out), result.packed, state=state, state_dtypes=state_dtypes)
        if args.pruned:
            if graph is not None:
                from tightcompress.pipeline.oneshot import write_pruned_onnx

                write_pruned_onnx(graph, result.weights, stage(args.pruned))
            else:
                write_pruned_state_dict(found, result.weights, stage(args.pruned))
        write_json_atomic(stage(args.json), PackReport.dump(report))
    total = report["total"]
    calibrated = f"calibrated on {report['calibration_samples']} samples" if report["calibrated"] else "|w|"
    error = report["relative_output_error"]
    error_text = "" if error is None else f", relative output error {error:.2%} on those samples"
    target = "" if args.rate is None else f" (asked {args.rate:g}x, {report['allocation']} per layer)"
    print(
        f"{len(report['layers'])} layer(s), {method}, {calibrated}: rate {total['compression_rate']:.2f}x"
        f"{target}, dropped {total['dropped_magnitude_fraction']:.2%} of |w|{error_text} -> {args.json}"
    )
    for message in report["notes"].get("messages", []):
        print(f"note: {message}")
    return 0


def one_shot_checkpoint_model(
    args: argparse.Namespace, method: str, config: PackConfig | None
) -> tuple[ModelWeights, typing.Any]:
    """`pack CKPT --model file.py:Class --rate R [--calibration X.pt]`: the checkpoint loaded into its class
    and pruned in place (`pipeline.oneshot.prune_module_packed`, calibrated on the tensor X, samples first),
    its packed layers and weights renamed by state_dict key (`conv1.weight`) as `pack --model` names them.
    Returns `(what the checkpoint holds, the one-shot result)`."""
    from tightcompress.pipeline.frontier.kinds.pytorch import load_tensor_calibration
    from tightcompress.pipeline.models import load_model
    from tightcompress.pipeline.oneshot import prune_module_packed
    from tightcompress.readers.checkpoint import read_state_dict
    from tightcompress.readers.matrices import gemm_name

    model = load_model(args.model, args.input, key=args.key)
    found = with_checkpoint_dtypes(
        model_weights(model, source=str(args.input)), read_state_dict(args.input, key=args.key)
    )
    calibration = None if args.calibration is None else load_tensor_calibration(Path(args.calibration))
    result = prune_module_packed(
        model,
        method=method,
        rate=args.rate,
        calibration=calibration,
        seed=args.seed,
        config=config,
        allocation=args.allocation,
    )

    def key(fqn: str) -> str:
        return f"{fqn}.weight" if fqn else "weight"

    packed = {}
    for pm in result.packed.values():
        source = pm.info["source"]
        source["weight"] = key(source["weight"])
        name = gemm_name(source["weight"], source.get("group_index"))
        pm.info["name"] = name
        packed[name] = pm
    result.packed = packed
    result.weights = {key(fqn): weight for fqn, weight in result.weights.items()}
    result.report["notes"] = {**found.notes, **result.report["notes"]}
    return found, result


def check_one_shot_args(args: argparse.Namespace) -> str:
    """The one-shot method named by `--method`/`--permute`, after refusing (one line) what one-shot pruning
    does not take."""
    if args.zoo is not None or args.input is None:
        raise TightCompressError("--rate and --calibration prune a model file: give one, not --zoo")
    suffix = Path(args.input).suffix.lower()
    method = args.method
    if args.permute:
        if method != "nm":
            raise TightCompressError(
                f"--permute goes with --method nm (N:M with a row permutation), not {method}"
            )
        method = "nm-permuted"
    if args.calibration is not None and suffix != ".onnx" and args.model is None:
        raise TightCompressError(
            "--calibration goes with an .onnx input (an .npz keyed by input name) or with a checkpoint and "
            "--model file.py:Class (a .pt or .npy tensor of inputs, samples first)"
        )
    if method == "dense":
        raise TightCompressError(
            "one-shot pruning prunes: choose tight, nm, column-combining or unstructured"
        )
    if method in UNSTRUCTURED_METHODS:
        if args.rate is None:
            raise TightCompressError(f"--method {method} prunes to a whole-model rate: give --rate R")
        if args.out is not None:
            raise TightCompressError(
                f"--method {method} has no packed format, so no --out: write the pruned model with --pruned"
            )
    if args.allocation is not None and args.rate is None:
        raise TightCompressError("--allocation shares out a whole-model rate: give --rate R with it")
    if args.rate is not None:
        given = [option for dest, option, default in FIXED_OPTIONS if getattr(args, dest) != default]
        if given:
            raise TightCompressError(
                f"--rate chooses each layer's options: drop {', '.join(given)} (or drop --rate to pack "
                "with one fixed config)"
            )
    elif args.sparsity is not None:
        raise TightCompressError("--calibration chooses what is kept by saliency: drop --sparsity")
    if args.ray is not None or args.jobs is not None:
        raise TightCompressError(
            "one-shot pruning runs the layers in graph order in this process: drop --jobs/--ray"
        )
    if args.skip_bad_layers:
        raise TightCompressError("--skip-bad-layers goes with packing, not with --rate or --calibration")
    if args.pruned is not None:
        wanted = (".onnx",) if suffix == ".onnx" else (".pt", ".pth", ".safetensors")
        if suffix != ".onnx" and suffix not in wanted:
            raise TightCompressError(
                f"--pruned writes a model: give an .onnx or a checkpoint input, not {suffix}"
            )
        if Path(args.pruned).suffix.lower() not in wanted:
            raise TightCompressError(
                f"--pruned writes the model in its input's format: end it in {' or '.join(wanted)}, "
                f"got {Path(args.pruned).name}"
            )
    return method


def write_pruned_state_dict(found: ModelWeights | None, weights: dict[str, np.ndarray], path: str) -> None:
    """The checkpoint's whole state_dict with each pruned weight replaced (in its own dtype), as .pt or
    .safetensors: it loads into the model like the input."""
    import torch

    from tightcompress.readers.checkpoint import tensor_to_numpy

    assert found is not None and found.state is not None
    tensors = {}
    for name, tensor in found.state.items():
        if name in weights:
            tensor = torch.from_numpy(np.ascontiguousarray(weights[name], dtype=np.float32)).to(tensor.dtype)
        else:
            tensor = (
                tensor if isinstance(tensor, torch.Tensor) else torch.from_numpy(tensor_to_numpy(tensor)[0])
            )
        tensors[name] = tensor.contiguous()
    output = Path(path)
    if output.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        with atomic_path(output, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp))
    else:
        with atomic_path(output, suffix=output.suffix) as tmp:
            torch.save(tensors, str(tmp))


def restore_dtypes(packed_layers: dict[str, PackedMatrix], found: ModelWeights) -> None:
    """Store each layer's kept values in its input dtype and record where the matrix came from (the
    weight's name, shape and group; for an ONNX input the file's SHA-256), so `unpack` can rebuild the
    PyTorch weight or the ONNX model."""
    onnx_sha256 = None
    if Path(found.source).suffix.lower() == ".onnx":
        from tightcompress.readers.onnx import file_sha256

        onnx_sha256 = file_sha256(found.source)
    for name, packed in packed_layers.items():
        gemm = found.matrices[name]
        store_dtype(packed, gemm.dtype)
        packed.info["source"] = weight_source(
            gemm.layer.name, gemm.layer.weight.shape, gemm.layer.groups, gemm.group_index
        )
        if onnx_sha256 is not None:
            packed.info["source"]["onnx_sha256"] = onnx_sha256


def passthrough_state(
    found: ModelWeights | None, packed: Mapping[str, PackedMatrix]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The checkpoint tensors that were not packed (biases, normalisation, depthwise weights, and layers
    skipped by --skip-bad-layers, whole, even when only one group of a grouped conv was), as NumPy."""
    if found is None or found.state is None:
        return {}, {}
    from tightcompress.readers.checkpoint import tensor_to_numpy

    skipped_weights = {gemm.layer.name for name, gemm in found.matrices.items() if name not in packed}
    packed_weights = {gemm.layer.name for gemm in found.matrices.values()} - skipped_weights
    state, dtypes = {}, {}
    for name, tensor in found.state.items():
        if name not in packed_weights:
            state[name], dtypes[name] = tensor_to_numpy(tensor)
    return state, dtypes


def run_unpack(args: argparse.Namespace) -> int:
    layers = load_packed(args.packed)
    output = Path(args.output)
    if args.onnx is not None or output.suffix.lower() == ".onnx":
        write_onnx(args, layers, output)
        return 0
    if output.suffix in (".pt", ".safetensors"):
        write_state_dict(args.packed, layers, output)
        return 0
    if output.suffix == ".npz":
        with atomic_path(output, suffix=".npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **{name: weight_matrix(packed) for name, packed in layers.items()})
        return 0
    if output.suffix != ".npy":
        raise TightCompressError(f"output must end in .npy, .npz, .pt or .safetensors, got {output.name}")
    if args.layer is not None:
        packed = layers[find_layer(layers, args.layer, args.packed)]
    elif len(layers) == 1:
        packed = next(iter(layers.values()))
    else:
        raise TightCompressError(
            f"{args.packed} holds {len(layers)} layers: name one with --layer, or write .npz"
        )
    with atomic_path(output, suffix=".npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, weight_matrix(packed))
    return 0


def write_state_dict(packed_path: str, layers: dict[str, PackedMatrix], output: Path) -> None:
    """Write a PyTorch-layout state_dict: every packed weight rebuilt (kept weights, 4-D for a conv, groups
    put back together; a subword layer's int8 weights times its scales) in its input dtype, then the
    checkpoint's other tensors."""
    import torch

    from tightcompress.readers.matrices import group_rows, matrix_to_weight

    state, dtypes = load_packed_state(packed_path)
    weights: dict[str, np.ndarray] = {}
    weight_dtypes: dict[str, str] = {}
    for name, packed in layers.items():
        source = packed.info.get("source")
        if source is None and not (name == "weight" or name.endswith(".weight")):
            # e.g. `compress` outputs name layers by module path and do not record the conv's shape: a
            # state_dict of 2-D `features.0` tensors would not load into the model
            raise TightCompressError(
                f"{packed_path}: layer {name!r} does not record its PyTorch weight (name and shape), so no "
                "state_dict can be rebuilt; write .npz for the matrices (compress writes model.pt beside it)"
            )
        source = source or {"weight": name, "shape": [packed.N, packed.K], "groups": 1}  # a Linear's weight
        weight_name, shape, groups = source["weight"], tuple(source["shape"]), int(source.get("groups", 1))
        index = source.get("group_index")
        if weight_name not in weights:
            weights[weight_name] = np.zeros(shape, dtype=np.float32)
        part = matrix_to_weight(weight_matrix(packed).astype(np.float32), (shape[0] // groups, *shape[1:]))
        rows = slice(None) if index is None else group_rows(shape[0], groups, index)
        weights[weight_name][rows] = part
        # a subword layer's values are its 4-bit subwords; its weights are float (int8 times scale)
        stored = "float32" if is_subword(packed) else packed.info.get("dtype", packed.values.dtype)
        weight_dtypes[weight_name] = str(stored)
    tensors = {}
    for name, array in {**weights, **state}.items():
        dtype = weight_dtypes[name] if name in weights else dtypes[name]
        tensor = torch.from_numpy(np.array(array, order="C"))
        with warnings.catch_warnings():  # complex32: torch calls its own support experimental
            warnings.simplefilter("ignore")
            tensors[name] = tensor.to(getattr(torch, dtype)) if hasattr(torch, dtype) else tensor
    if output.suffix == ".pt":
        with atomic_path(output, suffix=".pt") as tmp:
            torch.save(tensors, str(tmp))
    else:
        from safetensors.torch import save_file

        with atomic_path(output, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp))


def write_onnx(args: argparse.Namespace, layers: dict[str, PackedMatrix], output: Path) -> None:
    """`unpack P OUT.onnx --onnx IN.onnx`: IN with every packed layer's weight replaced by its kept values,
    refused when IN is not the file that was packed (its SHA-256 is recorded per layer at pack time)."""
    from tightcompress.pipeline.oneshot import write_pruned_onnx
    from tightcompress.readers.matrices import weight_from_groups
    from tightcompress.readers.onnx import read_onnx

    if args.onnx is None:
        raise TightCompressError("OUT.onnx needs --onnx IN.onnx: the ONNX file that was packed")
    if output.suffix.lower() != ".onnx":
        raise TightCompressError(
            f"--onnx writes an ONNX model: the output must end in .onnx, got {output.name}"
        )
    recorded = {str(p.info.get("source", {}).get("onnx_sha256")) for p in layers.values()}
    if "None" in recorded:
        raise TightCompressError(f"{args.packed} was not packed from an ONNX file (no SHA-256 recorded)")
    graph = read_onnx(args.onnx)
    if recorded != {graph.sha256}:
        packed_from = ", ".join(sorted(sha[:12] for sha in recorded))
        raise TightCompressError(
            f"{args.onnx} is not the file that was packed into {args.packed} (SHA-256 {graph.sha256[:12]}, "
            f"packed from {packed_from})"
        )
    parts: dict[str, dict[int, np.ndarray]] = {}
    shapes: dict[str, tuple[tuple[int, ...], int]] = {}
    for packed in layers.values():
        source = packed.info["source"]
        name, groups = source["weight"], int(source.get("groups", 1))
        parts.setdefault(name, {})[int(source.get("group_index") or 0)] = weight_matrix(packed)
        shapes[name] = (tuple(source["shape"]), groups)
    weights = {}
    for name, blocks in parts.items():
        shape, groups = shapes[name]
        if sorted(blocks) != list(range(groups)):
            raise TightCompressError(f"{args.packed}: layer {name!r} lacks some of its {groups} groups")
        weights[name] = weight_from_groups([blocks[g] for g in range(groups)], shape)
    write_pruned_onnx(graph, weights, output)
