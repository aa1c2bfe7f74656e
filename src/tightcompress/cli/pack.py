"""`tightcompress pack` and `tightcompress unpack`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tightcompress.api import METHODS, PackConfig
from tightcompress.cli.common import add_quiet, add_skip_bad_layers, declare_paths, height_arg
from tightcompress.errors import TightCompressError
from tightcompress.format.io import load_packed, save_packed
from tightcompress.matrices import load_matrices
from tightcompress.parallel import default_jobs, pack_layers
from tightcompress.report import build_report
from tightcompress.utils.atomic import atomic_path, output_group, write_json_atomic
from tightcompress.zoo import ZOO, ZooLayer, zoo_matrices


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pack", help="pack a matrix or every conv/linear weight of a checkpoint")
    parser.add_argument(
        "input", nargs="?", help=".npy K x N matrix, or a .pt/.pth/.safetensors state_dict (or use --zoo)"
    )
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
    add_pack_options(parser)
    add_parallel_options(parser)
    parser.add_argument("--json", required=True, metavar="REPORT.json", help="write the report here")
    parser.add_argument("--out", metavar="PACKED.safetensors", help="also write the packed layers here")
    add_skip_bad_layers(parser)
    add_quiet(parser)
    parser.set_defaults(func=run_pack)
    declare_paths(parser, inputs=("input", "checkpoint"), outputs=("json", "out"))

    unpack = subparsers.add_parser("unpack", help="rebuild the K x N matrix from a packed file")
    unpack.add_argument("packed", help="PACKED.safetensors written by `pack --out`")
    unpack.add_argument("output", help="OUT.npy (one layer) or OUT.npz (every layer)")
    unpack.add_argument("--layer", help="which layer to write to a .npy when the file holds several")
    unpack.set_defaults(func=run_unpack)
    declare_paths(unpack, inputs=("packed",), outputs=("output",))


def add_pack_options(parser: argparse.ArgumentParser) -> None:
    """The packing options shared by `pack` and the commands built on it."""
    parser.add_argument("--method", choices=METHODS, default="tight")
    parser.add_argument("--group", type=int, default=8, metavar="G", help="lane width G (G:1 mux per PE)")
    parser.add_argument(
        "--height",
        type=height_arg,
        default="auto",
        metavar="K|auto",
        help="slots per group per column, or auto for lossless",
    )
    parser.add_argument("--tile", type=int, default=32, metavar="C", help="array columns per tile")
    parser.add_argument("--alpha", type=int, default=8, help="column combining: rows per group at most")
    parser.add_argument(
        "--gamma",
        type=float,
        default=0.5,
        help="column combining: conflicts allowed per output column per group",
    )
    parser.add_argument(
        "--sparsity",
        type=float,
        metavar="S",
        help="first zero the smallest-magnitude fraction S of each matrix",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, help="annealing moves (default: scaled to the matrix)")
    parser.add_argument(
        "--objective",
        choices=("magnitude", "squared"),
        default="magnitude",
        help="capped height: minimise dropped |w| or dropped w^2",
    )


def add_parallel_options(parser: argparse.ArgumentParser) -> None:
    """`--jobs` and `--ray`: where the independent layers are packed."""
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help=f"worker processes packing layers in parallel (default: the cores, here {default_jobs()})",
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="pack the layers on this Ray cluster (optional extra; fails if unreachable, no fallback)",
    )


def matrices_from_args(args: argparse.Namespace) -> tuple[dict[str, np.ndarray], dict, dict[str, ZooLayer]]:
    """`(matrices, notes, zoo layers by name)` from the input file or the `--zoo` model."""
    if (args.input is None) == (args.zoo is None):
        raise TightCompressError("give either an input file or --zoo NAME (exactly one)")
    if args.zoo is None:
        if args.checkpoint is not None:
            raise TightCompressError("--checkpoint goes with --zoo; pass a checkpoint file as the input")
        return load_matrices(args.input), {}, {}
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
    return matrices, notes, {layer.name: layer for layer in layers}


def split_bad_layers(matrices: dict[str, np.ndarray], skip: bool) -> tuple[dict[str, np.ndarray], list[dict]]:
    """`(good matrices, skipped)`: with `skip`, layers that cannot be packed (all zero, NaN or inf) are set
    aside as `{"name", "reason"}`; without it the first such layer is the command's one-line error."""
    from tightcompress.api import check_matrix

    good, skipped = {}, []
    for name, matrix in matrices.items():
        try:
            check_matrix(matrix, name)
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


_SKIP_REASON = "depthwise convolution is not a dense GEMM; not packed"


def config_from_args(args: argparse.Namespace) -> PackConfig:
    return PackConfig(
        method=args.method,
        group=args.group,
        height=args.height,
        tile=args.tile,
        alpha=args.alpha,
        gamma=args.gamma,
        sparsity=args.sparsity,
        seed=args.seed,
        iterations=args.iterations,
        objective=args.objective,
    )


def run_pack(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    matrices, notes, zoo = matrices_from_args(args)
    matrices, bad_layers = split_bad_layers(matrices, skip=args.skip_bad_layers)
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
    layers = [packed.report() for packed in packed_layers.values()]
    for layer in layers:
        if layer["name"] in zoo:
            layer["kind"] = zoo[layer["name"]].kind
            layer["out_pixels"] = zoo[layer["name"]].out_pixels
    report = build_report(layers, config=vars(config))
    if notes:
        report["notes"] = notes
    if bad_layers:
        report["skipped_layers"] = bad_layers
    with output_group() as stage:  # --out and --json are written both or neither
        if args.out:
            save_packed(stage(args.out), packed_layers)
        write_json_atomic(stage(args.json), report)
    total = report["total"]
    if not args.quiet:
        print(
            f"{len(layers)} layer(s), {config.method}: rate {total['compression_rate']:.2f}x, "
            f"utilization {total['utilization']:.1%}, dropped {total['dropped_nnz']} nnz "
            f"({total['dropped_magnitude_fraction']:.2%} of |w|) -> {args.json}",
            file=sys.stderr,
        )
    return 0


def run_unpack(args: argparse.Namespace) -> int:
    layers = load_packed(args.packed)
    output = Path(args.output)
    if output.suffix == ".npz":
        with atomic_path(output, suffix=".npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **{name: packed.to_dense() for name, packed in layers.items()})
        return 0
    if output.suffix != ".npy":
        raise TightCompressError(f"output must end in .npy or .npz, got {output.name}")
    if args.layer is not None:
        if args.layer not in layers:
            raise TightCompressError(f"no layer {args.layer!r} in {args.packed}; it has {', '.join(layers)}")
        packed = layers[args.layer]
    elif len(layers) == 1:
        packed = next(iter(layers.values()))
    else:
        raise TightCompressError(
            f"{args.packed} holds {len(layers)} layers: name one with --layer, or write .npz"
        )
    with atomic_path(output, suffix=".npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, packed.to_dense())
    return 0
